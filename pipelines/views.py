"""Placeholder: the views module is being written."""
import dlt


def create_views(pipeline: dlt.Pipeline) -> list[str]:
    return []
