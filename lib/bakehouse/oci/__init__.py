"""OCI images, the format local images are kept in (image-spec v1.1): a layout per image,
its layers, and the cache of unpacked layers that service bakes mount their base from.

    layout.py   read and write one image's layout: blobs, config, manifest, index
    layers.py   layers as gzip tars: from mmdebstrap's tar, from what a bake changed, unpacked
    cache.py    unpacked layers, each once, for overlay mounts
    tool.py     `bakehouse-image`, the command the local templates' scripts call

A format, not a provider: it imports nothing of bakehouse but its errors and files.py, so the
scripts' calls start in a few tens of milliseconds.
"""
