"""Demo data for `make run`: a newsroom to click through on a fresh machine.

The first article is the page the product was born from, with every field a reader saw on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.articles import service as articles
from app.articles.models import ArticleStatus
from app.articles.schemas import ArticleCreate, CorrectionCreate
from app.cache import keys
from app.cache.publish import invalidate
from app.categories.models import Category
from app.comments import service as comments
from app.comments.schemas import CommentCreate
from app.core.config import get_settings
from app.core.security import Passwords, acting_as
from app.users import service as users
from app.users.models import Role, User
from app.users.schemas import UserCreate

DEMO_PASSWORD = "newsroom-demo"  # noqa: S105 - demo only; seed-demo refuses production
KABUL = ZoneInfo("Asia/Kabul")

SEED_BODY = (
    "<p>Russia must press the Taliban to enter peace talks in Afghanistan, while an international inquiry should establish whether the Kremlin is arming the insurgent group, according to a senior Afghan official.</p>"
    "\n<p>Russia has “a significant role” in bringing the Taliban to the negotiating table, Afghan National Security Adviser Mohammad Haneef Atmar told reporters in Moscow on Thursday. He said he told Russian Security Council Secretary Nikolai Patrushev that “if you have contacts with the Taliban, please use these contacts for promotion of peace talks. The Taliban should not be able to use such contacts for war.” According to Stars and Stripes.</p>"
    "\n<p>U.S. accusations that Russia may be sending weapons and other supplies to the Taliban are “the most sensitive issue,” though Afghan officials have no evidence it’s happening, Atmar said. Unproven claims of U.S. help for the Islamic State should also be checked, he said. The government in Kabul has proposed to “Russia, central Asia and our Western partners that we have a joint fact-finding mission to investigate, to see if there is any truth in such allegations,” Atmar said.</p>"
    "\n<p>The security chief’s visit took place as Russia and the U.S. are increasingly sparring over Afghanistan, adding to frictions over Ukraine, Syria and alleged Kremlin meddling in support of Donald Trump in the 2016 presidential elections. U.S. Defense Secretary Jim Mattis has voiced suspicion of Russia’s actions in Afghanistan, where it’s fostered ties with the Taliban amid a campaign by the terrorist group against Afghan and North Atlantic Treaty Organization forces. Russia, which fought a losing decade-long war in Afghanistan against U.S.-backed Islamist groups before the Soviet Union’s collapse, denies supplying arms to the Taliban.</p>"
    "\n<p>Trump and Russian President Vladimir Putin “agreed to explore ways to further cooperate in the fight against” the Taliban during phone talks on Tuesday, according to the White House. Russia has criticized the Trump administration’s decision to send more troops to the war-torn country 16 years after the 2001 U.S. invasion that followed the Sept. 11 terrorist attacks.</p>"
    "\n<p>Patrushev hosted the first informal meeting of security council officials from Russia, Afghanistan and the central Asian states of Kazakhstan, Kyrgyzstan, Tajikistan and Uzbekistan in Moscow on Wednesday. They discussed threats from terrorism and drug trafficking as well as “national reconciliation in Afghanistan,” according to the Interfax news service.</p>"
    "\n<p>The Taliban should be “put under pressure to come to peace talks” and Patrushev “fully supported that position,” Atmar said. The insurgent group has been invited to direct talks with the Afghan government and “will be making a big mistake if they fail to take advantage of this,” he said.</p>"
    "\n<p>Taliban demands for the withdrawal of foreign troops “should be the goal of negotiation, not a pre-condition,” Atmar said. “There are no pre-conditions. We are saying to the Taliban that the withdrawal of foreign troops should be achieved through peace.”</p>"
    "\n<p>U.S. plans to replace Russian helicopters and other military equipment used by Afghan forces with American models are “absolutely counter-productive” and “detrimental to our common goal of stabilizing the situation” in the country, Putin’s special envoy for Afghanistan, Zamir Kabulov, said Thursday, according to the RIA Novosti news service.</p>"
    "\n<p>Atmar said he hopes “cooperation will be restored” between Russia and the U.S., which previously purchased Russian-made helicopters for Afghan forces to use.</p>"
    "\n<p>“Afghanistan will retain the Russian helicopters, we will also have American helicopters,” he said. “So it’s not one against the other.”</p>"
)


@dataclass(frozen=True)
class Story:
    title: str
    kicker: str | None
    category: str
    tags: list[str]
    body: str
    days_ago: int


MORE = [
    Story(
        title="Kabul schools reopen after winter break",
        kicker="Education:",
        category="world",
        tags=["Kabul", "Education"],
        body="<p>Schools across Kabul reopened on Saturday after the winter break, with "
        "teachers reporting higher attendance than last year.</p><p>The ministry said "
        "new classrooms would open in three districts by spring.</p>",
        days_ago=1,
    ),
    Story(
        title="Trade talks resume between Kabul and Tashkent",
        kicker=None,
        category="asia",
        tags=["Trade", "Uzbekistan"],
        body="<p>Delegations from Afghanistan and Uzbekistan resumed talks on rail freight "
        "and electricity exports, officials said.</p>",
        days_ago=2,
    ),
    Story(
        title="Opinion: what peace talks need now",
        kicker="Analysis:",
        category="excerpted",
        tags=["Taliban", "Peace talks"],
        body="<p>Every side says it wants negotiations. What is missing is a table that "
        "all of them trust.</p>",
        days_ago=3,
    ),
]
# Enough further stories for paging to be tried (twenty articles in all, ten to a page).
BRIEFS = [
    ("Herat airport adds a second daily flight to Mashhad", "asia", ["Herat", "Transport"]),
    ("Wheat prices fall as the harvest comes in early", "world", ["Economy", "Agriculture"]),
    ("Mazar-i-Sharif hosts its first book fair in a decade", "asia", ["Culture", "Books"]),
    ("Cricket board names a new national coach", "world", ["Sport", "Cricket"]),
    ("Power cuts ease after a new line from Tajikistan", "asia", ["Energy", "Tajikistan"]),
    ("Kandahar clinics report fewer measles cases", "world", ["Health", "Kandahar"]),
    ("Opinion: the case for local radio", "excerpted", ["Media", "Radio"]),
    ("Snow closes the Salang pass for two days", "asia", ["Weather", "Transport"]),
    ("Women's football team travels to a regional cup", "world", ["Sport", "Football"]),
    ("Saffron farmers in Herat look to European buyers", "asia", ["Herat", "Trade"]),
    ("Kabul river clean-up draws hundreds of volunteers", "world", ["Kabul", "Environment"]),
    ("New university library opens in Jalalabad", "asia", ["Education", "Books"]),
    ("Opinion: what the trade figures do not show", "excerpted", ["Economy", "Trade"]),
    ("Buzkashi season opens in Mazar-i-Sharif", "asia", ["Sport", "Culture"]),
    ("Mobile banking reaches rural provinces", "world", ["Economy", "Technology"]),
    ("Pomegranate exports rise for a third year", "asia", ["Agriculture", "Trade"]),
]
MORE += [
    Story(
        title=title,
        kicker=None,
        category=category,
        tags=tags,
        body=f"<p>{title}, officials and residents said this week.</p>"
        "<p>More details are expected in the coming days.</p>",
        days_ago=4 + n,
    )
    for n, (title, category, tags) in enumerate(BRIEFS)
]
# A placeholder photo service, so a frontend has an image to lay out; replace with the
# newsroom's own media.
IMAGE = "https://picsum.photos/seed/newsroom-{slug}/1200/675"


async def _user(
    session: AsyncSession, passwords: Passwords, username: str, role: Role, name: str
) -> User:
    return await users.create(
        session,
        UserCreate(username=username, password=DEMO_PASSWORD, role=role, display_name=name),
        passwords=passwords,
    )


async def _category(
    session: AsyncSession, name: str, slug: str, parent: Category | None = None
) -> Category:
    category = Category(name=name, slug=slug, parent_id=parent.id if parent else None)
    session.add(category)
    await session.flush()
    return category


REPLIES = [
    ("Farid", "farid@example.com", "Talks without preconditions are the only way forward.", None),
    ("Anna K.", "anna@example.org", "Has Moscow said anything about the inquiry?", None),
    ("Amina, Kabul desk", "desk@example.net", "Not yet; we will update the article.", 1),
]


async def _comments(session: AsyncSession, article_id: int) -> None:
    """Approved replies under the seed article, one of them a threaded answer."""
    settings = get_settings().model_copy(update={"comment_moderation": "none"})
    posted: list[int] = []
    for name, email, text, parent in REPLIES:
        data = CommentCreate(
            author_name=name,
            author_email=email,
            content=text,
            parent_id=posted[parent] if parent is not None else None,
        )
        place = await comments.prepare(session, article_id, data, settings, ip="127.0.0.1")
        comment, _ = await comments.store(
            session, place, data, ip="127.0.0.1", user_agent="demo", settings=settings
        )
        posted.append(comment.id)


async def load_demo(session: AsyncSession) -> str:
    if await users.by_username(session, "admin") is not None:
        return "demo data already loaded"
    invalidate(session, keys.ALL)
    # One hash at a time: no request shares this process.
    passwords = Passwords(1)
    await _user(session, passwords, "admin", Role.admin, "Site Admin")
    editor = await _user(session, passwords, "editor", Role.editor, "Desk Editor")
    author = await _user(session, passwords, "author", Role.author, "Staff Reporter")

    world = await _category(session, "World", "world")
    categories = {
        "world": world,
        "asia": await _category(session, "Asia", "asia", world),
        "excerpted": await _category(session, "Excerpted", "excerpted", None),
    }
    desk = acting_as(editor)
    seed = await articles.create(
        session,
        ArticleCreate(
            number=5186,
            kicker="Hanif Atmar:",
            title="If Russia has contacts with Taliban, they should use it to bring them "
            "to peace talks",
            body="".join(SEED_BODY),
            status=ArticleStatus.published,
            published_at=datetime(2017, 11, 24, 12, 53, tzinfo=KABUL),
            category_id=categories["excerpted"].id,
            category_ids=[categories["asia"].id],
            tags=["Afghanistan", "Russia", "Taliban", "Peace talks"],
            source_name="Stars and Stripes",
            byline="Stars and Stripes",
            featured_image_url=IMAGE.format(slug="moscow-talks"),
            featured_image_caption="Placeholder photo (picsum.photos).",
        ),
        desk,
    )
    await articles.add_correction(
        session,
        seed,
        CorrectionCreate(
            kind="update",
            text="Added the Russian envoy's remarks on helicopters.",
            noted_at=datetime(2017, 11, 24, 15, 10, tzinfo=KABUL),
        ),
        desk,
    )
    # The page's own times, not the seeding's: written then, updated with the correction.
    seed.created_at = seed.published_at or seed.created_at
    seed.updated_at = datetime(2017, 11, 24, 15, 10, tzinfo=KABUL)
    await _comments(session, seed.id)
    now = datetime.now(UTC).replace(microsecond=0)
    for item in MORE:
        published = now - timedelta(days=item.days_ago)
        story = await articles.create(
            session,
            ArticleCreate(
                title=item.title,
                kicker=item.kicker,
                body=item.body,
                status=ArticleStatus.published,
                published_at=published,
                category_id=categories[item.category].id,
                tags=item.tags,
            ),
            acting_as(author),
        )
        story.featured_image_url = IMAGE.format(slug=story.slug)
        story.created_at = story.updated_at = published
    return f"demo data loaded; log in as admin, editor or author with the password {DEMO_PASSWORD}"
