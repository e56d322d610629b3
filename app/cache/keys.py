"""Surrogate keys: the names of what a cached response shows and of what a write changed.

A response carries the keys of everything it shows (`tag`); a write invalidates the keys of
what it changed (`app.cache.publish.invalidate`), and only those responses go. The same keys
go to the configured CDN (`Surrogate-Key` for Fastly and Varnish's xkey, `Cache-Tag` for
Cloudflare; `outgoing`), so a purge there drops the same pages.

- `article:{id}`: its page, and the lists, feeds and neighbours' pages that show it;
  invalidated when its public data changes.
- `comments:{id}`: its comment pages and every page showing its comment count; when its
  public comments change.
- `category:{id}`, `tag:{id}`, `author:{id}`: pages showing its name, slug or profile; when it
  changes.
- `media:{id}`: pages showing that image (its alt text, credit, caption or crops); when it
  changes or goes.
- `listings`: every list of articles, feed, sitemap and count; when which articles a list
  holds, or their order, changes.
- `search`: lists with `q=`; when a public article's text changes.
- `articles`: sitemaps and `order=-updated_at` lists; when any public article changes.
- `categories`, `tags`, `authors`: their collections; when one is added, changed or removed.
- `all`: every response; everything is invalidated at once (an import).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import Response

ALL = "all"
LISTINGS = "listings"
SEARCH = "search"
ARTICLES = "articles"
CATEGORIES = "categories"
TAGS = "tags"
AUTHORS = "authors"
# Carried by no response: invalidated by writes to scheduled articles, it wakes the watchers
# that invalidate lists when a scheduled article's time comes.
SCHEDULE = "schedule"
# Carried by no response either: moved by every webhook write, it tells each process that
# the active webhooks it remembers (read with every approved comment) are out of date.
WEBHOOKS = "webhooks"

SURROGATE_KEY = "Surrogate-Key"
CACHE_TAG = "Cache-Tag"


def article(article_id: int) -> str:
    return f"article:{article_id}"


COMMENTS = "comments:"


def comments(article_id: int) -> str:
    return f"{COMMENTS}{article_id}"


def category(category_id: int) -> str:
    return f"category:{category_id}"


def tag(tag_id: int) -> str:
    return f"tag:{tag_id}"


def author(user_id: int) -> str:
    return f"author:{user_id}"


def media(media_id: int) -> str:
    return f"media:{media_id}"


def label(response: Response, keys: Iterable[str]) -> Response:
    """Name what `response` shows: the response cache stores only labelled responses.
    Clients get the label only in the header the configured CDN reads (`outgoing`)."""
    ordered = dict.fromkeys((ALL, *keys))
    response.headers[SURROGATE_KEY] = " ".join(ordered)
    return response


def outgoing(cdn: str) -> str | None:
    """Which header carries a response's keys to clients: `Surrogate-Key` for Varnish's xkey
    and Fastly, `Cache-Tag` for Cloudflare, none without a CDN to purge (a list page's keys
    are 2 KB that no client reads)."""
    return {"varnish": SURROGATE_KEY, "fastly": SURROGATE_KEY, "cloudflare": CACHE_TAG}.get(cdn)


def parse(header: str) -> list[str]:
    return header.split()
