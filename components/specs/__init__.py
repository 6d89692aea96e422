"""Pure spec builders shared by several components: plain values in, Kubernetes specs out."""
