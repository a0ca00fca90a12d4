"""Evaluation: quality metrics, classical codecs to compare against, the Kodak runner, plots, BD-rate."""
