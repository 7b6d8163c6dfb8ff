"""What the daemon shows people over HTTP, next to its health endpoints: snapshots, the live
preview, the status page, and who may see them."""
