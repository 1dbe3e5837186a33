"""Entities: the keys features are looked up by."""

from feast import Entity, ValueType

post = Entity(
    name="post",
    join_keys=["post_id"],
    value_type=ValueType.STRING,
    description="A post (video, image or text), keyed by its post_id.",
)

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A user, as viewer and as creator, keyed by its user_id.",
)
