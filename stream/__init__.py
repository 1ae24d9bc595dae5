"""The streaming half of fedn-live: sources, capture, face, flow, tracker, pipeline."""
import os

# FFmpeg and OpenCV's video I/O print warnings to stderr on bad input or a missing camera;
# we report those ourselves in one line. Set before any module imports cv2.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
