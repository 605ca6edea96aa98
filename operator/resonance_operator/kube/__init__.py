"""The only package that talks to the Kubernetes API.

``client`` speaks HTTP (aiohttp) with server-side apply and counts every
call; ``credentials`` loads a kubeconfig or the in-cluster service account;
``children`` observes, applies and prunes a cluster's children and writes its
status and Events.
"""
