"""Durable background work: bulk runs recorded in the database, delivered by Huey.

The database is the source of truth (runs and their per-meme items with
leases); Huey only wakes workers up. A worker killed mid-meme leaves an
expired lease that the reaper hands back, so nothing is lost and nothing that
finished is redone.
"""

from memesearch.jobs.models import Run

__all__ = ["Run"]
