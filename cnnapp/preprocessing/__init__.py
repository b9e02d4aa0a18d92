"""Preprocessing as Keras layers, used in tf.data for training AND inside the exported model."""
