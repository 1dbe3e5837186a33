{#- unique_key is the day: a partition's run deletes that day's rows and inserts them anew -#}
{{ config(materialized='incremental', unique_key='activity_date',
          indexes=[{'columns': ['creator_id', 'activity_date']}]) }}

with views as (

    select * from {{ ref('int_post_interactions__enriched') }}
    where event_type = 'view' and {{ on_partition_day('activity_date') }}

),

aged as (

    select
        *,
        -- the age the viewer reaches in the activity's year (only the birth year is known)
        extract(year from activity_date)::int - viewer_birth_year as viewer_age

    from views

),

banded as (

    select
        creator_id,
        activity_date,
        coalesce(viewer_country, 'unknown') as country,
        case
            when viewer_age between 13 and 17 then '13-17'
            when viewer_age between 18 and 24 then '18-24'
            when viewer_age between 25 and 34 then '25-34'
            when viewer_age between 35 and 44 then '35-44'
            when viewer_age between 45 and 54 then '45-54'
            when viewer_age >= 55 then '55+'
            else 'unknown'  -- no birth year given (or an impossible one)
        end as age_band,
        viewer_id,
        watch_time_s

    from aged

),

final as (

    select
        creator_id,
        activity_date,
        country,
        age_band,
        count(*)::bigint as views,
        count(distinct viewer_id)::bigint as unique_viewers,
        coalesce(sum(watch_time_s), 0)::double precision as watch_time_s

    from banded
    group by 1, 2, 3, 4

)

select * from final
