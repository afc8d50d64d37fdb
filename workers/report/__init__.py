"""Reports a person looks at: one HTML page per result, and an index of a results folder."""
