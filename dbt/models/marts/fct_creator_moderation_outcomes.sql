with decisions as (

    select * from {{ ref('stg_moderation__decisions') }}

),

review_queue as (

    select * from {{ ref('stg_moderation__review_queue') }}

),

final as (

    select
        decisions.creator_id,
        decisions.decided_date as decision_date,
        count(*) filter (where decisions.action = 'allow')::bigint as posts_allowed,
        count(*) filter (where decisions.action = 'limit')::bigint as posts_limited,
        count(*) filter (where decisions.action = 'review')::bigint as posts_sent_to_review,
        count(*) filter (where decisions.action = 'remove')::bigint as posts_removed,
        count(*) filter (where review_queue.review_status = 'open')::bigint as reviews_open,
        count(*) filter (where review_queue.review_status = 'resolved')::bigint as reviews_resolved

    from decisions
    left join review_queue on review_queue.post_id = decisions.post_id
    group by 1, 2

)

select * from final
