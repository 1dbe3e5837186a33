with source as (

    select * from {{ source('bronze', 'users') }}

),

renamed as (

    select
        user_id,
        handle,
        country,
        language,
        is_creator,
        birth_year,
        created_at

    from source

)

select * from renamed
