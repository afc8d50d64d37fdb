"""Training the emotion head (train-ser): features, speaker- and corpus-independent evaluation, model card."""
