"""The metrics CSV of a run, kept across resumes: Lightning's CSV logger deletes ``metrics.csv`` when a
new logger opens the folder, so a resumed run would lose the record of everything before it.

:class:`ResumableCSVLogger` appends instead: it reads the existing header, and on resume drops only
the rows logged after the checkpoint it continues from (those steps are trained and logged again).
"""

from __future__ import annotations

import csv
import io
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from promptlearn.utils.atomic import atomic_write


class AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as handle:
                self.metrics_keys = sorted(next(csv.reader(handle), []))

    def keep_through_step(self, step: int) -> None:
        """Drop the rows logged at a step after ``step`` (Lightning logs optimizer step ``n`` as ``n - 1``)."""
        self.save()
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as handle:
            reader = csv.DictReader(handle)
            header, rows = reader.fieldnames or [], [r for r in reader if int(float(r["step"])) <= step]

        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.metrics_file_path, lambda out: out.write(text.getvalue().encode()))


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that appends to the run's ``metrics.csv`` rather than replacing it."""

    @property
    def experiment(self) -> AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def resume_at(self, global_step: int) -> None:
        """Continue the record of a run resumed at ``global_step``: rows of later steps are logged anew."""
        self.experiment.keep_through_step(global_step - 1)


def continue_metrics(loggers: list, resume_step: int | None) -> None:
    """Before fitting: a resumed run continues its metrics record at ``resume_step``; a fresh run starts it."""
    for logger in loggers:
        if isinstance(logger, ResumableCSVLogger):
            logger.resume_at(resume_step or 0)
