"""Erasure methods, one module each, registered in :data:`erasekit.erasure.METHODS`.

The registry imports every module of this package on first lookup: adding a method is adding one file.
"""
