"""The doctor: turn a gradient diagnosis into a solved task.

``lstmlab doctor CONFIG.toml --run-dir DIR`` or, in Python, ``ll.doctor(config, run_dir,
budget_minutes=10)`` (this package is callable: ``ll.doctor(...)`` is ``ll.doctor.doctor(...)``).
Modules, one job each:

    facts       what the data are (length, features, classes, task kind)
    treatments  config changes that shorten or protect the gradient path (Patch, chrono, readouts, ...)
    diagnosis   the plain config's gradient health over its probe, the headline verdict
    candidates  treatments from the diagnosis and the data
    probe       one candidate's ``lstmlab train`` run, advanced slice by slice
    study       the Optuna study and the successive halving
    plan        the config read, the data loaded, the base config
    api         doctor(): the whole run
    report      doctor.json, doctor.md, best.toml, the Doctor section of report.html
    cli         the lstmlab doctor command
"""

from __future__ import annotations

import sys
import types

from .api import DoctorSettings, doctor
from .candidates import Candidate, propose
from .diagnosis import Diagnosis, headline, headline_text
from .facts import DataFacts, facts_from_splits
from .study import DoctorError
from .treatments import WHEN, Treatment, apply, treatment

__all__ = ["doctor", "DoctorSettings", "DoctorError", "Candidate", "propose", "Diagnosis", "headline",
           "headline_text", "DataFacts", "facts_from_splits", "Treatment", "treatment", "apply", "WHEN"]


class _CallableModule(types.ModuleType):
    """``ll.doctor(...)`` calls :func:`doctor` while ``lstmlab.doctor`` stays the package."""

    def __call__(self, *args, **kwargs):
        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
