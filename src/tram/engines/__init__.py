"""Engine launchers (llama.cpp's llama-server, vLLM) and the `tram up` supervisor."""
