"""The shared indexer: apply a typed `Layout` to a dataset folder and write the index.

`apply_layout` finds the images, reads each record's fields from the layout's sources and
says, with evidence, what matched and what did not; `write_index` splits the records
(a predefined split is kept; otherwise about 80/20, stratified, with copies and patients
kept together) and writes ``index/{train,test,label_dict}.json`` and the report. The Data
Engineer runs it through the ``index_dataset`` tool (``python -m medbuilder.protocol.indexing``
inside the sandbox); ``medbuilder datacards draft`` runs it on the user's own folder.
"""

from medbuilder.protocol.indexing.apply import DatasetFacts, IndexJob, LayoutFailure, apply_layout
from medbuilder.protocol.indexing.report import IndexingReport, weak_evidence
from medbuilder.protocol.indexing.split import write_index

__all__ = ["DatasetFacts", "IndexJob", "LayoutFailure", "IndexingReport", "apply_layout", "weak_evidence", "write_index"]
