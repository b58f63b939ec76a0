"""One file per paper table: the recipe as data, with the paper's numbers.

Installed as ``nin_repro.experiments``; each module defines ``TABLE`` (a ``nin_repro.recipe.Table``).
"""
