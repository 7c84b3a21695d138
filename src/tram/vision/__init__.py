"""Image parts: data-URL checks, the remote-URL policy and the SSRF-safe fetch."""

from tram.vision.fetch import ImageFetcher
from tram.vision.parts import check_data_url, check_image_parts, param_of

__all__ = ["ImageFetcher", "check_data_url", "check_image_parts", "param_of"]
