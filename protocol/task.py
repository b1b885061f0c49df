"""The four tasks medbuilder builds models for."""

from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    diagnosis = "diagnosis"
    segmentation = "segmentation"
    anomaly_detection = "anomaly_detection"
    report_generation = "report_generation"
