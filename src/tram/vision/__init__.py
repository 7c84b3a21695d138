"""Image parts: data-URL checks, the remote-URL policy, the SSRF-safe fetch and header checks."""

from tram.vision.decode import ImageInfo, ImageWorkers, inspect, prepare
from tram.vision.fetch import ImageFetcher
from tram.vision.parts import check_data_url, content_parts, param_of

__all__ = ["ImageFetcher", "ImageInfo", "ImageWorkers", "check_data_url", "content_parts",
           "inspect", "param_of", "prepare"]
