"""llama.cpp underneath LocalBackend: hardware defaults and model loading."""
