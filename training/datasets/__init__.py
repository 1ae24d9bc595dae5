"""Dataset readers (CAS(ME)^2, SAMM-LV, CAS(ME)^3, SynthME) into one Annotation record.

See training/datasets/README.md for layouts, conventions and label mappings.
"""
from .layout import videos
from .readers import (all_real_annotations, annotations_dir, load_real, read_casme2,
                      read_casme3, read_casme3_blinks, read_casme3_micro, read_sammlv,
                      read_synthme)
from .records import (DATASET_FPS, DATASETS, RAW_TO_EMOTION4, Annotation, Video, emotion4)
from .splits import Split, fixed_split, loso_splits, subjects

__all__ = ["Annotation", "Video", "DATASETS", "DATASET_FPS", "RAW_TO_EMOTION4", "emotion4",
           "read_casme2", "read_sammlv", "read_casme3", "read_casme3_micro",
           "read_casme3_blinks", "read_synthme", "load_real", "all_real_annotations",
           "annotations_dir", "videos", "Split", "loso_splits", "fixed_split", "subjects"]
