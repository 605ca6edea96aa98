"""Container images without a Docker engine.

``Dockerfile.worker`` and ``Dockerfile.operator`` are the images' only description. ``images.build``
carries them out here, daemonless: the ``debian:bookworm-slim`` base comes from mmdebstrap, every
``RUN`` runs in a chroot on an overlay of the layers below it, every ``COPY`` copies, and each
instruction's result is one layer cached by a hash of its inputs (as Docker caches), so the two
images share their Debian layers and a code change rebuilds only the project's layer. The result is
an OCI image layout (``images.oci``); ``images.run`` unpacks it and runs its entry point as the
image's user in a user-namespace chroot.

- ``dockerfile``: parse the Dockerfile subset the images use (pure).
- ``oci``: layer tarballs with overlay whiteouts, blobs, config, manifest, index; unpack (files only).
- ``build``: the executor (mmdebstrap, overlay mounts, chroot; needs root).
- ``run``: unpack a layout and run its entry point in a user namespace.
"""
