"""Tabular synthesizers with one fit/sample/save/load interface.

>>> from models.synth import CTGANSynthesizer, GaussianCopulaSynthesizer, TableSchema
>>> schema = TableSchema.infer(df, overrides={"AGE": {"kind": "integer", "min_value": 18}})
>>> model = CTGANSynthesizer(random_state=0).fit(df, schema)
>>> rows = model.sample(500, conditions={"ARM": "Placebo"}, random_state=1)
>>> path = model.save("artifacts/ctgan.pkl"); model = CTGANSynthesizer.load(path)
"""

from models.synth.base import BaseSynthesizer
from models.synth.copula import GaussianCopulaSynthesizer
from models.synth.ctgan import CTGANSynthesizer
from models.synth.schema import ColumnSpec, TableSchema

__all__ = ["BaseSynthesizer", "CTGANSynthesizer", "ColumnSpec", "GaussianCopulaSynthesizer", "TableSchema"]
