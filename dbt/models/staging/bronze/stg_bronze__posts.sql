with source as (

    select * from {{ source('bronze', 'posts') }}

),

renamed as (

    select
        post_id,
        author_id,
        kind,
        caption,
        hashtags,
        cardinality(hashtags) as hashtag_count,
        media_uri,
        duration_s,
        language,
        created_at,
        event_date as created_date

    from source

)

select * from renamed
