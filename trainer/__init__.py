"""fer-trainer: train, evaluate and quantize FER-2013 emotion models."""
