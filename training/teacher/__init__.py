"""Teachers for pseudo-labelling (MediaPipe FaceMesh); mediapipe is imported lazily."""
