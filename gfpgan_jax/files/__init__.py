"""Files on disk: the restricted .pth reader, converted safetensors weights, official releases and the
cache, atomic writes."""
