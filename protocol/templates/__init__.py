"""Training code templates, filled by name (M3Builder's code templates, Auto3DSeg BundleAlgo style).

One folder per task (diagnosis, segmentation, anomaly_detection, report_generation),
each a self-contained code package copied into a run's workspace and run there:

    template.yaml    task, dims, metric, files and the fillable keys (type, default, doc)
    dataloader.py    index files -> MONAI datasets/loaders; `python dataloader.py --config config.json`
                     prints one batch's shapes and dtypes (the Module Architect's check)
    model.py         network factory
    train.py         `python train.py --config config.json`: trains, evaluates on test.json, writes
                     checkpoints/model.pt, train_log.jsonl, metrics.json, predictions.json
    predict.py       `python predict.py --config config.json FILE...` or `load(folder).predict(files)`
    _common/*.py     copied beside them: common.py (config, splits, loaders), engine.py (training
                     loop, bootstrap CI, AUROC), predict_common.py (what every predict.py shares),
                     confounders.py (the refinement strategies' preprocessing)
    README.md, examples/   what it does; example train.json / test.json / label_dict.json

API:
    list_templates() / get_template(task) -> TemplateSpec
    fill_template(task, workspace, values, overwrite=False) -> FillRecord
    run_training(workspace, timeout_s=None) -> metrics dict
    suggest_values(task, index, dims) -> values derived from the data
"""

from medbuilder.protocol.templates.fill import FillRecord, build_config, fill_template
from medbuilder.protocol.templates.run import TrainingError, run_training
from medbuilder.protocol.templates.spec import (KeySpec, TemplateError, TemplateSpec, get_template, list_templates,
                                                template_names)
from medbuilder.protocol.templates.suggest import suggest_values

__all__ = ["FillRecord", "KeySpec", "TemplateError", "TemplateSpec", "TrainingError", "build_config",
           "fill_template", "get_template", "list_templates", "run_training", "suggest_values", "template_names"]
