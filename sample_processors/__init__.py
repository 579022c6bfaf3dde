"""The sample processors `make dev` and the tests run, each written with the SDK
(frame_buffer_sdk): a fake detector, a stateful brightness/motion detector, and OpenCV's
people and face detectors."""
