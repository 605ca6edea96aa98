"""The only package that talks to the Kubernetes API.

``client`` speaks HTTP (aiohttp) with server-side apply and counts every
call (paths from ``api/kinds.py``); ``credentials`` loads a kubeconfig or the
in-cluster service account; ``children`` observes, applies and prunes a
cluster's children and posts its Events; ``status`` writes its status only when
it changed, with an optimistic lock.
"""
