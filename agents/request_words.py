"""The word lists a request is read with (agents/request_terms.py): task words by weight, modality, anatomy,
findings, dimension."""

STRONG, WEAK = 2, 1
# When two tasks weigh the same, the first in this order wins.
TASK_ORDER = ["segmentation", "anomaly_detection", "report_generation", "diagnosis"]
TASK_WORDS: dict[str, dict[int, list[str]]] = {
    "segmentation": {
        STRONG: ["segment", "delineat", "contour", "outlin", "mask", "skull strip", "skull-strip", "skullstrip",
                 "brain extraction", "extract the brain", "voxel-wise", "voxelwise", "pixel-wise", "pixelwise",
                 "voxel-level", "pixel-level", "per-voxel", "per voxel", "per-pixel", "per pixel", "each voxel",
                 "every voxel", "each pixel", "every pixel", "the pixels of", "the voxels of", "label each voxel",
                 "boundary", "boundaries", "trace the"],
        WEAK: ["region of", "region", "area of", "shape", "where exactly", "isolate", "from the rest of", "paint",
               "mark", "map of", "draw", "tissue from"],
    },
    "anomaly_detection": {
        STRONG: ["anomal", "outlier", "novelty", "unsupervised", "normal-only", "only normal", "only have normal",
                 "only healthy", "only on normal", "only on healthy", "normal scans only", "healthy scans only",
                 "normal data", "normal examples", "trained on normal", "trained on healthy", "train on normal",
                 "train on healthy", "learning from normal", "learn from normal", "healthy controls", "deviat",
                 "unusual", "out of the ordinary", "atypical", "one-class", "one class", "abnormality score",
                 "how abnormal", "abnormality detection", "detect abnormal", "flag abnormal", "flag anything",
                 "looks off", "look like the healthy", "no disease labels", "no labelled disease",
                 "without labels", "unlabelled", "weird", "unexpected", "just normals", "normal anatomy",
                 "normal appearance", "what a normal"],
        WEAK: ["abnormal", "normals", "healthy scans", "healthy ones", "rare"],
    },
    "report_generation": {
        STRONG: ["report", "caption", "paragraph", "findings and impression", "impression", "free-text", "free text",
                 "radiology text", "image-to-text", "narrative", "dictat", "preliminary read", "written", "write up",
                 "write-up", "in words", "in sentences", "sentence", "describ", "descript", "summar", "compose",
                 "radiologist's note", "write findings", "write the findings", "draft"],
        WEAK: ["write", "text", "explain", "words", "radiologist"],
    },
    "diagnosis": {
        STRONG: ["classif", "diagnos", "predict whether", "tell whether", "tells me whether", "tell me if",
                 "tumour or no", "tumor or no", "positive or negative", "presence of", "is present", "yes or no",
                 "yes/no", "normal or abnormal", "is there", "are there", "does this", "does the", "which of these",
                 "probability of", "distinguish", "benign", "malignant", "grade", "triage", "sort", "label each",
                 "recognise which", "recognize which", "identify scans with", "report whether", "report if"],
        WEAK: ["detect", "identify", "which", "whether", "recogni", "spot", "screen", "present"],
    },
}
MODALITY_WORDS = {
    "MRI": ["mri", "mr ", "magnetic resonance", "t1", "t2", "flair"],
    "CT": ["ct", "computed tomography", "cat scan"],
    "X-ray": ["x-ray", "xray", "x ray", "radiograph", "radiographs", "cxr", "chest film"],
    "fundus": ["fundus", "retina", "retinal"],
    "ultrasound": ["ultrasound", "sonograph", "echo"],
    "histology": ["histology", "histopathology", "whole slide", "h&e"],
}
ANATOMY_WORDS = {
    "brain": ["brain", "cerebral", "cranial", "intracranial", "neuro", "glioma", "meningioma", "skull", "head"],
    "chest": ["chest", "lung", "lungs", "thorax", "thoracic", "pulmonary", "pneumothorax", "pneumonia",
              "pleural", "cardiomegaly", "cxr"],
    "abdomen": ["abdomen", "abdominal", "liver", "kidney", "pancreas", "spleen"],
    "knee": ["knee", "menisc", "cruciate"],
    "spine": ["spine", "vertebra", "vertebrae"],
    "eye": ["eye", "retina", "fundus"],
}
# One key per finding; the words are synonyms (matched as whole words, plural "s"/"es" allowed),
# so "tumour" in a request matches a card whose labels say "mass" or "lesion".
FINDING_WORDS = {
    "tumour": ["tumour", "tumor", "glioma", "meningioma", "glioblastoma", "neoplasm", "neoplasia", "mass",
               "lesion", "cancer", "carcinoma", "malignancy", "malignant", "metastasis", "metastases"],
    "pneumothorax": ["pneumothorax", "pneumothoraces", "collapsed lung", "ptx"],
    "pneumonia": ["pneumonia", "consolidation"],
    "nodule": ["nodule"],
    "effusion": ["effusion"],
    "cardiomegaly": ["cardiomegaly", "enlarged heart"],
    "fracture": ["fracture"],
    "covid": ["covid", "covid-19", "sars-cov-2"],
    "haemorrhage": ["haemorrhage", "hemorrhage", "bleed", "haematoma", "hematoma"],
    "stroke": ["stroke", "infarct", "infarction"],
    "retinopathy": ["retinopathy"],
    "meniscal tear": ["meniscal tear", "meniscus tear", "torn meniscus"],
}
DIMENSION_WORDS = {
    "3D": ["3d", "3-d", "volume", "volumes", "volumetric", "whole scan", "whole-brain volume"],
    "2D": ["2d", "2-d", "slice", "slices", "radiograph", "image-level"],
}
