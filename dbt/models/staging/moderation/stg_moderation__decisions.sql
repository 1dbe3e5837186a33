with source as (

    select * from {{ source('moderation', 'decisions') }}

),

renamed as (

    select
        post_id,
        author_id as creator_id,
        action,
        reasons,
        policy_version,
        source.source as decided_by,  -- asset or live (the column shares the CTE's name)
        decided_at,
        (decided_at at time zone 'UTC')::date as decided_date,
        created_at as post_created_at

    from source

)

select * from renamed
