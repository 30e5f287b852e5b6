"""The model repository's files as one package: `mixingbuddy.hub.<file>`.

`configuration_mixingbuddy.py`, `vocabulary_mixingbuddy.py`, `processing_mixingbuddy.py` and `modeling_mixingbuddy.py`
sit at the top of the repository (and of every saved model folder) and import each other relatively, as Hub remote
code does. Relative imports need a package: this one is it, its path being the folder that holds the files, so
`import mixingbuddy.hub.modeling_mixingbuddy` works in a checkout, an editable install and an installed wheel alike.
Nothing imports this module at interpreter start-up. Outside this package the files still import by their plain
names from a folder on `sys.path` that holds them (`from processing_mixingbuddy import parse_advice`), as a separate
copy of the modules.
"""

from pathlib import Path

# In a checkout the files sit beside the `mixingbuddy` folder; an installed wheel puts them beside it in site-packages.
__path__ = [str(Path(__file__).resolve().parents[2])]
