"""Relevant priors: a ready study's earlier studies, found on the facility's PACS by
C-FIND and retrieved by C-MOVE before the study is offered."""
