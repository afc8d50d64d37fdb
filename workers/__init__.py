"""Speech to transcripts with voice emotion: the pipeline core shared by every entry point."""

PIPELINE_VERSION = "0.2.0"
