"""The face at run time: the face-mesh indices, the lip model, the landmark codec and the portrait renderer.
Numpy and OpenCV only; the training side (models/) builds on these, never the other way round."""
