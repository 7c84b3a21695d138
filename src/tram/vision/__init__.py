"""Image parts: data-URL checks, the remote-URL policy, the SSRF-safe fetch and header checks."""

from tram.vision.decode import ImageInfo, inspect_image
from tram.vision.fetch import ImageFetcher
from tram.vision.parts import check_data_url, image_parts, param_of

__all__ = ["ImageFetcher", "ImageInfo", "check_data_url", "image_parts", "inspect_image",
           "param_of"]
