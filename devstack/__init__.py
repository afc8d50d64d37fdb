"""The local dev stack: emulators, the notification-to-CloudEvent bridge and the processes
that make up the cloud path on one machine. Never imported by production code paths."""
