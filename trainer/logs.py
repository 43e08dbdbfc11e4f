"""Structured JSON logs (one object per line): run id, step, duration; never data or secrets."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger


def get_logger(service: str) -> Logger:
    return Logger(service=service, level=os.environ.get("LNN_LOG_LEVEL", "INFO"))
