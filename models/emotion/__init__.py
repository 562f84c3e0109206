"""Emotion from the face and the voice: the two nets, their fusion, and the recipe that trains them."""
