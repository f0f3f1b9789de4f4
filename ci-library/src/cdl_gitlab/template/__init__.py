"""Keeping a rendered project on the current CDL template.

- :mod:`cdl_gitlab.template.conflicts`: leftover Copier conflicts (markers, ``*.rej`` files).
- :mod:`cdl_gitlab.template.changelog`: the library CHANGELOG sections between two versions.
- :mod:`cdl_gitlab.template.merge_request`: the update merge request (python-gitlab).
- :mod:`cdl_gitlab.template.update`: ``cdl template update`` (check, update, push, MR).
"""
