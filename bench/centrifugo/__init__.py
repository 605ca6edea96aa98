"""Building and configuring Centrifugo v6, the baseline the worker is measured against."""
