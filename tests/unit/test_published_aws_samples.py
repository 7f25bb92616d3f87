"""The published AWS samples in tests/fixtures/aws: every file is listed in SOURCES.md with its source, every
listed file exists, and each is the kind of document its name says (so a mislabelled copy fails here)."""

from __future__ import annotations

import re

import pytest

from tests.factories import AWS_SAMPLES, aws_sample

SAMPLE_FILES = sorted(path.name for path in AWS_SAMPLES.glob("*.json"))
SOURCES = (AWS_SAMPLES / "SOURCES.md").read_text()


def test_sources_lists_exactly_the_sample_files() -> None:
    listed = sorted(set(re.findall(r"`([a-z0-9-]+\.json)`", SOURCES)))
    assert listed == SAMPLE_FILES


@pytest.mark.parametrize("file_name", SAMPLE_FILES)
def test_each_sample_loads_as_the_document_its_name_says(file_name: str) -> None:
    sample = aws_sample(file_name)
    if file_name.startswith("agent-event-"):
        assert sample["EventType"] in ("HEART_BEAT", "STATE_CHANGE")
        assert sample["AgentARN"].startswith(f"{sample['InstanceARN']}/agent/")
    elif file_name.startswith("marketplace-sns-"):
        assert "action" in sample
    elif file_name.startswith("marketplace-"):
        assert sample["source"] == "aws.agreement-marketplace"
        assert sample["detail-type"].lower().replace(" - ", "-").replace(" ", "-") in file_name
    else:
        assert sample["Type"] == "Notification"


def test_the_quirks_the_product_must_handle_are_in_the_samples_as_published() -> None:
    """These are why the lifecycle tests expect licence-id matching and trimmed identifiers."""
    licence = aws_sample("marketplace-license-updated-manufacturer")["detail"]["license"]["arn"]
    assert licence.startswith("aws:license-manager:us-east-1:")
    assert aws_sample("marketplace-sns-subscription-message")["customer-identifier"] == " X01EXAMPLEX"
    assert "CustomerIdentifier" in aws_sample("marketplace-sns-message-pascal-case-keys")
