"""Writes of the orders app: the message store (``messages``) and applying a message to
orders, patients and studies (``apply``)."""
