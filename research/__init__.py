"""Studies of the model: measurements that informed the shipped recipe.

Not installed and not imported by anything shipped (``stream`` or ``model_export``): each
module runs as ``python -m research.<name>`` from a checkout with the ``[train]`` extra, and its
findings are logged in docs/model-studies.md.
"""
