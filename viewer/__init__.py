"""The OHIF image viewer, prebuilt and served by the app at ``/viewer/``.

``make install`` fetches the pinned ``@ohif/app`` package (``npm ci``) and
``python -m viewer.build`` prepares its ``dist/`` for the sub-path; the views
serve it, with a generated configuration whose only data source is our own
``/dicomweb/``.  The viewer shows only what ``/dicomweb/`` gives the signed-in user.
"""
