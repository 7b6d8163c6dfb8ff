"""What the training and evaluation of every model share: metrics and the model-card writers."""
