with creator_days as (

    select creator_id, activity_date, followers_gained, followers_lost
    from {{ ref('stg_metrics__creator_daily') }}
    where followers_gained > 0 or followers_lost > 0

),

final as (

    select
        creator_id,
        activity_date,
        followers_gained,
        followers_lost,
        followers_gained - followers_lost as net_followers,
        sum(followers_gained - followers_lost) over (
            partition by creator_id order by activity_date
            rows between unbounded preceding and current row
        )::bigint as followers_to_date

    from creator_days

)

select * from final
