"""Search: query parsing, keyword + vector retrieval and reciprocal rank fusion."""

from memesearch.search.engine import SearchEngine, SearchHit, SearchResult
from memesearch.search.query import ParsedQuery, parse_query

__all__ = ["ParsedQuery", "SearchEngine", "SearchHit", "SearchResult", "parse_query"]
