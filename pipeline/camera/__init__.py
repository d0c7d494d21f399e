"""Where frames come from: the camera simulator and the device tier in the camera."""
