"""DALI pipeline definitions for ReLabel training, validation and annotation.

Installed as ``dali_relabel.pipelines``; import a definition, add your own operators, build it.
"""
